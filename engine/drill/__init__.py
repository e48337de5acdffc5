"""Restore drills: each database dump of a snapshot restored into a
throwaway container (same image as the app's database, no network, a
temporary volume, generated credentials), checked, and removed whatever
happens. Nothing here touches the app's containers or volumes. No Django."""
