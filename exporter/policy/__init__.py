"""De-identification policy: recipes, Annex E profiles, pseudonyms, release gate."""
