"""How every student reads its input: RGB, (x - STUDENT_MEAN) / STUDENT_STD.

Written into each student pack's manifest (trainer/students.py), folded into the stem
of the students cut from the teacher (trainer/nets/dlib_derived.py) and applied to
the training crops (trainer/distill.py `to_input`).
"""

STUDENT_MEAN = 127.5
STUDENT_STD = 128.0
