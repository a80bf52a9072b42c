"""The instructor's side: a course directory for nbgrader, collecting downloads, grading.

Nothing in the course imports this package except its own command, ``python -m solutions.grading``.
"""
