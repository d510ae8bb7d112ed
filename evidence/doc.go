// Package evidence is the root of the evidence module. See the sub-packages.
package evidence
