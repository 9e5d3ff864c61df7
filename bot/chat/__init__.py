"""The chat layer: the kit every feature uses, the features (turns, uploads, renders, accounts) and the services the handlers call."""
