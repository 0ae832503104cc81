"""One module per destination: OTLP, Prometheus, OTel traces/metrics, Parquet, CapFrameX."""
