"""Why a model recommends an item: attributions, attention, deletion tests, plain text."""
