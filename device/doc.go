// Package device is the root of the device (agent) module. See the sub-packages.
package device
