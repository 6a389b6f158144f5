"""Who is asking and what they may do: credentials, SMART scopes and the patient compartment."""
