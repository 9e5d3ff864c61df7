"""The one way out to Telegram: a chat's output, the flood pacer, live replies, previews, pictures and video probes."""
