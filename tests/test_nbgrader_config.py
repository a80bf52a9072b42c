"""nbgrader_config.py: harmless in the clone (Jupyter's nbgrader extensions read it when a learner
starts `jupyter lab` there), and a full course configuration in a course directory."""

import shutil
from pathlib import Path

from traitlets.config.loader import PyFileConfigLoader

ROOT = Path(__file__).resolve().parents[1]


def load(folder):
    return PyFileConfigLoader("nbgrader_config.py", path=str(folder)).load_config()


def test_in_the_clone_it_loads_and_leaves_the_course_root_alone():
    config = load(ROOT)  # must not raise: that would stop `jupyter lab` for learners
    assert "root" not in config.CourseDirectory
    assert config.OverwriteCells.add_missing_cells is True


def test_in_a_course_directory_it_points_everything_there(tmp_path):
    shutil.copyfile(ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    config = load(tmp_path)
    assert config.CourseDirectory.root == str(tmp_path)
    assert config.CourseDirectory.db_url == f"sqlite:///{tmp_path / 'gradebook.db'}"
    assert config.ExecutePreprocessor.timeout == 60
    assert config.ZipCollectApp.collector_plugin == "solutions.grading.collect.CourseCollector"
