"""The numpy core both halves share: model card, genes, scale, vocabularies, readers, preprocessing."""
