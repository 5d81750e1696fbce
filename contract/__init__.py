"""The numpy core both halves share: model card, gene ids and alignment, input scale, vocabularies, readers, preprocessing."""
