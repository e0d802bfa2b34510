"""What the chosen model reads: token counts, and the prompt (attached data included) fitted to
its budget."""
