"""Pure vocabulary every layer uses, with no I/O: what the bot says, intents, profiles, accounts, the agent's text, timelines, media rules, logging and metrics."""
