"""The projection runtime: the projector, the live follower and its supervisor, rebuild."""
