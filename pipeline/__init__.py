"""livemod: on-prem moderation of Chinese e-commerce livestreams."""

__version__ = "0.1.0"
