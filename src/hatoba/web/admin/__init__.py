"""The web admin: pages for administrators and users on the https listener."""
