"""The search tool server and its parts: search backends, fetch + extract, query-LLM reading, cache, URL guard."""
