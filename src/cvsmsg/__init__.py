"""cvsmsg: presence-gated CVS notifications over XMPP."""

__version__ = "0.1.0"
