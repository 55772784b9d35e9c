"""The saga packages bundled with Baton, one folder each (``payment/``): data, not code.

A Python package only so that an installed Baton carries the folders along (pyproject's
package-data); ``orchestrator.runtime.packages.default_package_paths`` finds them through it.
"""
