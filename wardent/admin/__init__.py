"""The admin listener (aiohttp) and the CLI's client of it."""
