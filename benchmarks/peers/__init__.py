"""The peers iDream is measured against: SASRec (sasrec.py) and DreamRec (dreamrec.py, on iDream's
own code with learned ID vectors in place of text); popularity and text-kNN are the references every
evaluation reports (idream/evaluation/references.py)."""
