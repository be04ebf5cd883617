"""pixjax experiments: configs plus thin mains, run with ``pixjax run NAME``."""
