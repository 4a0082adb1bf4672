"""cascadec runtime: executes a compiled plan.json stage by stage. Imports only cascadec.plan from the compiler."""
