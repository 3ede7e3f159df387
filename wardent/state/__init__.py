"""State shared across requests, and who may write it (DESIGN.md, "State, and who may write it").

`bans.BanTable` is what the request path reads; `keeper.BanKeeper` is the only
task that writes it, and `store.BanStore` persists every change to SQLite.
"""
