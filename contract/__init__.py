"""The numpy core both halves share: card, genes, scale, vocabularies, readers, preprocessing."""
