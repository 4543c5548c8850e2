pub(crate) mod hours;
