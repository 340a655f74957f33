"""Export: curated records -> Terminal-Corpus rows and SFT rows (token counts, loss masks), mixes and subsets."""
