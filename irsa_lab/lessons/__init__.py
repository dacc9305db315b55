"""The plumbing behind the guided notebooks, one module per notebook.

A notebook cell calls one function here and prints or displays what it returns, so
the cell a learner reads does one thing. Import the module a notebook needs
(``from irsa_lab.lessons import pod_mutation``); the package imports nothing itself.
"""

__all__: list[str] = []
