"""Reference solutions for the Transformer-from-scratch course.

One module per chapter, in the order the course teaches them::

    tokenization -> embeddings -> attention -> mlp -> blocks -> training

A chapter module may import earlier chapters, never later ones. ``solutions.checks`` compares
a learner's code with these references; ``solutions.grading`` is the instructor's autograder.
"""

__version__ = "0.1.0"

# The chapters that exist, in course order. Notebook tooling, checks and grading read this list.
CHAPTERS = ["01_tokenization", "02_embeddings", "03_attention", "04_mlp", "05_blocks", "06_training"]
