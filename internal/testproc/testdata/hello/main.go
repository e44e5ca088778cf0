// Command hello greets: a program for testproc's tests to build and run.
package main

import "fmt"

func main() { fmt.Println("hello") }
