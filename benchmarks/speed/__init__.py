"""Speed measured side by side in one run: the top-k kernel against its alternatives
(``projection``), every constraint family (``families``) and the solvers' step cost
(``overhead``). Import the one you need."""
