"""nbgrader configuration of the course.

Do not grade inside the clone: `python -m solutions.grading setup COURSE_DIR` makes a course
directory elsewhere, copies this file into it and writes the source notebooks there. nbgrader
reads this file from the directory it runs in, so every path below is relative to that copy.
"""

import os

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

root = os.path.dirname(os.path.abspath(__file__))
if os.path.isdir(os.path.join(root, "solutions")):
    raise SystemExit(
        "This is the course repository, not a course directory. Run\n"
        "    python -m solutions.grading setup ~/transformer-course-grading\n"
        "and run nbgrader there."
    )

c.CourseDirectory.course_id = "transformer-course"
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
