"""Deploys: running an image as an app's new version (localrun today)."""
