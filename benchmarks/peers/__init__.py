"""The peers iDream is measured against: SASRec, popularity and text-kNN (DreamRec is iDream's own
code with ID vectors in place of text: `idream.training.train`, item_source="id")."""
