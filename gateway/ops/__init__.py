"""Operations: the serve loop that joins the stages, metrics, logs and the per-instance audit log."""
