"""Mattebox for Nuke: the node logic (kept free of matting; the server mattes)."""
