"""The stand tests and benchmarks share: every server they start on 127.0.0.1 (the NemoVideo
emulator, the fake Bot API, a real redis-server, a proxy) and the bot's own process."""
