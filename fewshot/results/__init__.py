"""Result records (one JSON a run x episode set), tables and plots."""
