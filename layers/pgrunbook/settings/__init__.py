"""Settings: the option table (each option declared once), the loaded and checked settings, and where pgrunbook's own files are."""
