"""The NemoVideo backend: the HTTP client, the SSE event reader and the error tree."""
