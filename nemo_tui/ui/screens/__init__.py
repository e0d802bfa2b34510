"""The dashboard's screens: the main one, stats, help and the small dialogs."""
