// Package atomicfile replaces a file in one step: a reader, or a crash, sees
// the old content or the new, never half a file. tetherd dev writes its PEM
// files with it, and the tether CLI its token cache.
package atomicfile
