"""The end-to-end demo: `python -m keras_metric_losses.demo` (see `__main__`)."""
