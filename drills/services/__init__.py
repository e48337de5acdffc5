"""Writes of the drills app: request and start a drill (requests.py), run it
(run.py), remove what killed drills left (leftovers.py)."""
