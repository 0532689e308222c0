"""Deliver: send processed instances to their destinations (C-STORE, folder) with retries."""
