"""How much memory there is and how hard it is pressed: sampling, probes, pressure levels."""
