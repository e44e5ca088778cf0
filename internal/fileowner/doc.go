// Package fileowner tells who owns a file, for the checks that refuse a
// folder or file other users could have written (the CLI's token cache,
// tetherd dev's --dir). On systems without Unix owners it reports none, and
// those checks keep to the kind of file.
package fileowner
