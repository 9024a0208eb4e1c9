"""What the frozen and pretrained encoders need, built offline once and cached: the cpu protocol's image
anchors (`anchors.py`), the distilled text student (`text_student.py`), caption embeddings by the frozen
text encoders (`text_features.py`), and a dataset made ready for every method (`prepare.py`)."""
