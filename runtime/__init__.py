"""cascadec runtime: executes a compiled plan.json stage by stage. Imports only cascadec.contract.plan from the compiler."""
