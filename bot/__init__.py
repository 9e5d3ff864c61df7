"""nemo-video-bot core: settings, NemoVideo client, state, routing and flows (no Telegram handlers)."""
