"""Teaching widgets and visuals: pure functions that build text, HTML and figures, and
thin ipywidgets wrappers whose state a plain notebook cell can read.

Import the module you need (``from irsa_lab.ui.playground import Playground``); the
package itself imports nothing heavy.
"""

__all__ = ["decoder", "describe", "diff", "playground", "sequence", "text", "timeline"]
