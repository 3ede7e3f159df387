"""The price feed: sources of trades (simulated, Binance) and the worker that turns
them into last prices, candles and stream events."""
