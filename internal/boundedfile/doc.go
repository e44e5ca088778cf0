// Package boundedfile reads a whole file, but no more than a bound: the
// operator's and the user's PEM, settings and cache files are small, and a
// path to /dev/zero, a log or a disk image must be an error naming the file,
// not a process that eats memory until the kernel kills it.
package boundedfile
