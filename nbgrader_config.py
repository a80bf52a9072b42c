"""nbgrader configuration of the course.

Grade outside the clone: `python -m solutions.grading release COURSE_DIR` makes a course directory
elsewhere, copies this file into it, writes the source notebooks there and releases them. nbgrader reads this
file from the directory it runs in, so the paths below are relative to that copy.

Jupyter's nbgrader extensions also read this file when a learner starts `jupyter lab` in the
clone, so there it must do nothing drastic: it leaves the course root unset (nbgrader's default,
the current directory, which has no source/ folder to release from).
"""

import os

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

root = os.path.dirname(os.path.abspath(__file__))
in_clone = os.path.isdir(os.path.join(root, "solutions"))

c.CourseDirectory.course_id = "transformer-course"
if not in_clone:
    c.CourseDirectory.root = root
    c.CourseDirectory.db_url = "sqlite:///" + os.path.join(root, "gradebook.db")
    c.Exchange.root = os.path.join(root, "exchange")  # unused (no JupyterHub); keeps nbgrader off /srv

# The stub body nbgrader writes in place of a solution; the committed stubs use exactly this.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# Grading: a per-cell time limit (a check takes well under a second; 60 s leaves room for slow
# but correct answers), and check cells a student deleted are put back and graded.
c.ExecutePreprocessor.timeout = 60
c.Execute.timeout = 60
c.Execute.interrupt_on_timeout = True
c.OverwriteCells.add_missing_cells = True

# Collecting downloads: the chapter is read from the notebook's metadata, so "Copy of ..." and
# other renamed files are still recognised; the student id is the file name's first part.
c.ZipCollectApp.collector_plugin = "solutions.grading.collect.CourseCollector"
c.CourseCollector.named_regexp = r"(?P<student_id>[A-Za-z0-9.@-]+)_"

# Exporting: grades.csv leaves out the chapters that nobody has handed in yet (stock nbgrader
# writes a 0 for every student there).
c.ExportApp.plugin_class = "solutions.grading.export.CourseCsvExport"
