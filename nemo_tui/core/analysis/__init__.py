"""Analysis mode: the demo cohort, the prompt that asks for a script, the script taken out of
the answer, and what a run of it did under its limits."""
